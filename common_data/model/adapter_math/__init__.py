"""The numbers of the comparison methods that do not depend on the framework (numpy only): DoRA's initial
magnitudes and merge, PiSSA's SVD start and the form its checkpoints take, AdaLoRA's rank budget. Both trainers
start from them."""
