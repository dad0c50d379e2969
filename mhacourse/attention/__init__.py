"""The attention layer in stages; each module builds on the one before it.

=====================  =====  ==========================================
module                 stage  what it adds
=====================  =====  ==========================================
scaled_dot_product     1      softmax(Q Kᵀ · scale + mask) V, its weights
single_head            1b     one head with q/k/v projections
multi_head             2      split/merge heads, MultiHeadAttention(dims, num_heads)
masks                  3      causal, padding, boolean <-> additive, PyTorch's convention
custom_dims            4      the full constructor of mlx.nn.MultiHeadAttention
fused                  5      the final layer on mx.fast.scaled_dot_product_attention
online                 5a     the same attention over key tiles (online softmax), memory ∝ L
=====================  =====  ==========================================
"""
