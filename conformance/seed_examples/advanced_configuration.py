# KerasFactory HyperZZWOperator page, "Quick Start > Advanced Configuration", verbatim. The snippet has no
# import line; the two lines below (`import keras`, `from hyperzzw import HyperZZWOperator`) were prepended.
import keras
from hyperzzw import HyperZZWOperator

# Advanced configuration with multiple hyper ZZW operators
def create_context_aware_network():
    # Define inputs
    input_tensor = keras.Input(shape=(25,), name='input_features')
    context_tensor = keras.Input(shape=(12,), name='context_features')
    
    # Multiple hyper ZZW operators
    x = HyperZZWOperator(input_dim=25, context_dim=12)([input_tensor, context_tensor])
    x = keras.layers.Dense(64, activation='relu')(x)
    x = keras.layers.BatchNormalization()(x)
    
    x = HyperZZWOperator(input_dim=64, context_dim=12)([x, context_tensor])
    x = keras.layers.Dense(32, activation='relu')(x)
    x = keras.layers.Dropout(0.2)(x)
    
    x = HyperZZWOperator(input_dim=32, context_dim=12)([x, context_tensor])
    x = keras.layers.Dense(16, activation='relu')(x)
    x = keras.layers.Dropout(0.1)(x)
    
    # Multi-task output
    classification = keras.layers.Dense(3, activation='softmax', name='classification')(x)
    regression = keras.layers.Dense(1, name='regression')(x)
    
    return keras.Model([input_tensor, context_tensor], [classification, regression])

model = create_context_aware_network()
model.compile(
    optimizer='adam',
    loss={'classification': 'categorical_crossentropy', 'regression': 'mse'},
    loss_weights={'classification': 1.0, 'regression': 0.5}
)
