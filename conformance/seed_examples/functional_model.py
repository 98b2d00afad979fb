# KerasFactory HyperZZWOperator page, "Quick Start > In a Functional Model", verbatim except the import line:
# `from kerasfactory.layers import HyperZZWOperator` -> `from hyperzzw import HyperZZWOperator`.
import keras
from hyperzzw import HyperZZWOperator

# Define inputs
input_tensor = keras.Input(shape=(20,), name='input_features')
context_tensor = keras.Input(shape=(10,), name='context_features')

# Apply hyper ZZW operator
x = HyperZZWOperator(input_dim=20, context_dim=10)([input_tensor, context_tensor])

# Continue processing
x = keras.layers.Dense(32, activation='relu')(x)
x = keras.layers.Dense(16, activation='relu')(x)
outputs = keras.layers.Dense(1, activation='sigmoid')(x)

model = keras.Model([input_tensor, context_tensor], outputs)
