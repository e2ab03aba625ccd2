"""Mesh creation, logical axis names, and regex -> tactic sharding plans.

Model code names activation axes only through the constants below (never the string
literals); `sharding_rules` in a config map them to mesh axes.
"""

# Logical axis names of activations.
ACT_BATCH = "act_batch"   # B
ACT_LEN = "act_len"       # T / S / P
ACT_EMBED = "act_embed"   # D
ACT_HEADS = "act_heads"   # N / K
ACT_MLP = "act_mlp"       # F
ACT_VOCAB = "act_vocab"   # V
