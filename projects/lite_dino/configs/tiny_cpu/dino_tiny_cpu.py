"""DINO with the standard encoder, tiny: lite_dino_tiny_cpu.py with only the encoder changed.

The encoder is the standard 6-layer deformable encoder (every token queries in
every layer, weights predicted from the query: detrex's DINO encoder, on this
package's op); everything else (R18 backbone, KDA decoder cross-attention, data,
schedule) is lite_dino_tiny_cpu.py's, so the two differ only in the encoder.
The baseline of the trade-off study (tools/tradeoff_study.py).
"""
from .lite_dino_tiny_cpu import dataloader, lr_multiplier, model, optimizer, train

model.transformer.encoder.variant = "standard"
model.transformer.encoder.attention = "msda"

train.output_dir = "./output/tiny_cpu/dino"
