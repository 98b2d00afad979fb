# KerasFactory HyperZZWOperator page, "Quick Start > Basic Usage", verbatim except the import line:
# `from kerasfactory.layers import HyperZZWOperator` -> `from hyperzzw import HyperZZWOperator`.
import keras
from hyperzzw import HyperZZWOperator

# Create sample input data
batch_size, input_dim, context_dim = 32, 16, 8
inputs = keras.random.normal((batch_size, input_dim))
context = keras.random.normal((batch_size, context_dim))

# Apply hyper ZZW operator
zzw_op = HyperZZWOperator(input_dim=16, context_dim=8)
output = zzw_op([inputs, context])

print(f"Input shape: {inputs.shape}")      # (32, 16)
print(f"Context shape: {context.shape}")   # (32, 8)
print(f"Output shape: {output.shape}")     # (32, 16)
