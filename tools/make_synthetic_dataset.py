#!/usr/bin/env python
"""Write the synthetic shapes dataset (COCO format) that the projects' tiny CPU configs train on.

The tiny configs generate it themselves on first use; this is for looking at it,
or for other sizes:

    python tools/make_synthetic_dataset.py                      # ./datasets/synthetic_shapes
    python tools/make_synthetic_dataset.py --root /tmp/shapes --num-train 1000 --height 256 --width 320

Needs numpy and Pillow only.
"""
import argparse

from lite_detr_plugin.data import default_synthetic_root, generate_synthetic_coco


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=None, help=f"output folder (default: {default_synthetic_root()})")
    parser.add_argument("--num-train", type=int, default=300)
    parser.add_argument("--num-val", type=int, default=50)
    parser.add_argument("--height", type=int, default=128)
    parser.add_argument("--width", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--max-objects", type=int, default=4)
    parser.add_argument("--min-size", type=int, default=16)
    args = parser.parse_args(argv)
    root = generate_synthetic_coco(
        args.root,
        num_train=args.num_train,
        num_val=args.num_val,
        image_size=(args.height, args.width),
        seed=args.seed,
        max_objects=args.max_objects,
        min_size=args.min_size,
    )
    print(root)


if __name__ == "__main__":
    main()
