"""Shared by the project tests: config discovery, CPU shrinking, a synthetic batch.

Imports detectron2 only inside functions, so collecting these tests never needs it.
"""
import glob
import importlib.util
import os

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
PROJECTS = ("lite_dino", "lite_h_detr", "lite_deformable_detr")
TINY_CONFIGS = {
    "lite_dino": "projects/lite_dino/configs/tiny_cpu/lite_dino_tiny_cpu.py",
    "lite_h_detr": "projects/lite_h_detr/configs/tiny_cpu/lite_h_detr_tiny_cpu.py",
    "lite_deformable_detr": "projects/lite_deformable_detr/configs/tiny_cpu/lite_deformable_detr_tiny_cpu.py",
}


def lite_configs():
    """Every shipped config: projects/*/configs/**/*.py except the models/ helpers and _private files."""
    found = []
    for project in PROJECTS:
        pattern = os.path.join(REPO_ROOT, "projects", project, "configs", "**", "*.py")
        for path in sorted(glob.glob(pattern, recursive=True)):
            relative = os.path.relpath(path, os.path.join(REPO_ROOT, "projects", project, "configs"))
            if relative.split(os.sep)[0] == "models" or os.path.basename(path).startswith("_"):
                continue
            found.append(path)
    return found


def load_config(path):
    from detectron2.config import LazyConfig

    return LazyConfig.load(path if os.path.isabs(path) else os.path.join(REPO_ROOT, path))


def shrink_for_cpu(cfg, num_queries=100, dn_number=10):
    """Fewer queries / denoising groups and CPU devices; the architecture is kept."""
    cfg.train.device = "cpu"
    model = cfg.model
    model.device = "cpu"
    if "num_queries" in model:  # DINO, Deformable DETR (two-stage proposals follow it)
        model.num_queries = min(model.num_queries, num_queries)
    if "dn_number" in model:
        model.dn_number = min(model.dn_number, dn_number)
    if "num_queries_one2one" in model:  # H-DETR: one-to-one + one-to-many = two-stage proposals
        model.num_queries_one2one = min(model.num_queries_one2one, num_queries // 2)
        model.num_queries_one2many = min(model.num_queries_one2many, num_queries)
        model.transformer.two_stage_num_proposals = model.num_queries_one2one + model.num_queries_one2many
    if "select_box_nums_for_evaluation" in model:
        model.select_box_nums_for_evaluation = min(model.select_box_nums_for_evaluation, num_queries // 2)
    return cfg


def synthetic_batch(sizes=((160, 192), (144, 176)), seed=0):
    """Two random images with a couple of boxes each, in detectron2's training-input format."""
    import torch
    from detectron2.structures import Boxes, Instances

    generator = torch.Generator().manual_seed(seed)
    batch = []
    for index, (height, width) in enumerate(sizes):
        image = torch.randint(0, 256, (3, height, width), dtype=torch.uint8, generator=generator)
        boxes = torch.tensor([[10.0, 12.0, 70.0, 90.0], [80.0, 40.0, 150.0, 130.0]])[: 2 - index % 2]
        instances = Instances((height, width))
        instances.gt_boxes = Boxes(boxes)
        instances.gt_classes = torch.tensor([0, 2])[: len(boxes)]
        batch.append({"image": image, "height": height, "width": width, "instances": instances})
    return batch


def load_train_net():
    """tools/train_net.py as a module (tools/ is not a package)."""
    spec = importlib.util.spec_from_file_location("lite_train_net", os.path.join(REPO_ROOT, "tools", "train_net.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
