"""Activation layers: Dice, the data-adaptive activation of DIN."""
