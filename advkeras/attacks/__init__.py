"""Attacks: one entry point (`generate`) over foolbox, compiled native TF attacks and ART."""
from advkeras.attacks.base import Attack
from advkeras.attacks.minimal import DEFAULT_EPS_GRID, MinimalAdversarials, minimal_adversarials, minimal_eps
from advkeras.attacks.native import NativeBIM, NativeFGSM, NativePGD, linf_pgd
from advkeras.attacks.registry import REGISTRY, attack_names, generate, get_attack
from advkeras.attacks.result import AttackResult
from advkeras.attacks.steps import iterative_params

__all__ = ["Attack", "AttackResult", "DEFAULT_EPS_GRID", "NativeBIM", "NativeFGSM", "NativePGD", "REGISTRY", "attack_names",
           "generate", "get_attack", "iterative_params", "linf_pgd", "minimal_adversarials", "minimal_eps", "MinimalAdversarials"]
