"""tests/helpers/modules.py: the weight perturbation the attention and encoder tests rely on."""
import torch

from .modules import perturb_parameters_


def test_perturb_parameters_is_deterministic():
    a, b = torch.nn.Linear(3, 3), torch.nn.Linear(3, 3)
    b.load_state_dict(a.state_dict())
    perturb_parameters_(a, seed=3)
    perturb_parameters_(b, seed=3)
    assert torch.equal(a.weight, b.weight)
    zero = torch.nn.Linear(3, 3)
    torch.nn.init.zeros_(zero.weight)
    assert perturb_parameters_(zero).weight.abs().min() > 0
