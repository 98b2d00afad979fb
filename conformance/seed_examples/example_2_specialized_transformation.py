# KerasFactory HyperZZWOperator page, "Examples > Example 2: Specialized Transformation", verbatim. The snippet
# has no import line; the two lines below (`import keras`, `from hyperzzw import HyperZZWOperator`) were
# prepended.
import keras
from hyperzzw import HyperZZWOperator

# Create a specialized transformation model
def create_specialized_transformation():
    # Define inputs
    input_tensor = keras.Input(shape=(15,), name='input_features')
    context_tensor = keras.Input(shape=(6,), name='context_features')
    
    # Specialized transformation
    x = HyperZZWOperator(input_dim=15, context_dim=6)([input_tensor, context_tensor])
    x = keras.layers.Dense(24, activation='relu')(x)
    x = keras.layers.BatchNormalization()(x)
    
    x = HyperZZWOperator(input_dim=24, context_dim=6)([x, context_tensor])
    x = keras.layers.Dense(12, activation='relu')(x)
    x = keras.layers.Dropout(0.1)(x)
    
    # Output
    outputs = keras.layers.Dense(1, activation='sigmoid')(x)
    
    return keras.Model([input_tensor, context_tensor], outputs)

model = create_specialized_transformation()
model.compile(optimizer='adam', loss='binary_crossentropy')
