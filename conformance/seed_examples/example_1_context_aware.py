# KerasFactory HyperZZWOperator page, "Examples > Example 1: Context-Aware Processing", verbatim except the
# import line: `from kerasfactory.layers import HyperZZWOperator` -> `from hyperzzw import HyperZZWOperator`.
import keras
import numpy as np
from hyperzzw import HyperZZWOperator

# Create a context-aware processing model
def create_context_aware_model():
    # Define inputs
    input_tensor = keras.Input(shape=(20,), name='input_features')
    context_tensor = keras.Input(shape=(8,), name='context_features')
    
    # Context-aware processing
    x = HyperZZWOperator(input_dim=20, context_dim=8)([input_tensor, context_tensor])
    x = keras.layers.Dense(32, activation='relu')(x)
    x = keras.layers.BatchNormalization()(x)
    
    x = HyperZZWOperator(input_dim=32, context_dim=8)([x, context_tensor])
    x = keras.layers.Dense(16, activation='relu')(x)
    x = keras.layers.Dropout(0.2)(x)
    
    # Output
    outputs = keras.layers.Dense(1, activation='sigmoid')(x)
    
    return keras.Model([input_tensor, context_tensor], outputs)

model = create_context_aware_model()
model.compile(optimizer='adam', loss='binary_crossentropy')

# Test with sample data
sample_inputs = keras.random.normal((100, 20))
sample_context = keras.random.normal((100, 8))
predictions = model([sample_inputs, sample_context])
print(f"Context-aware predictions shape: {predictions.shape}")
