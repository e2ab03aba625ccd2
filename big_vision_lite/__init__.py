"""big_vision_lite: PaliGemma in JAX/Flax, in the style of big_vision."""
