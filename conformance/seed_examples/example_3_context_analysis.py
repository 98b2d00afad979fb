# KerasFactory HyperZZWOperator page, "Examples > Example 3: Context Analysis", verbatim. The snippet has no
# import line; the two lines below (`import keras`, `from hyperzzw import HyperZZWOperator`) were prepended.
# The page leaves the call commented out (`# model = analyze_context_behavior()`); the test calls it.
import keras
from hyperzzw import HyperZZWOperator

# Analyze context-dependent behavior
def analyze_context_behavior():
    # Create model with HyperZZWOperator
    input_tensor = keras.Input(shape=(12,))
    context_tensor = keras.Input(shape=(6,))
    
    x = HyperZZWOperator(input_dim=12, context_dim=6)([input_tensor, context_tensor])
    outputs = keras.layers.Dense(1, activation='sigmoid')(x)
    
    model = keras.Model([input_tensor, context_tensor], outputs)
    
    # Test with different context patterns
    test_inputs = keras.random.normal((10, 12))
    test_contexts = [
        keras.random.normal((10, 6)),  # Random context
        keras.random.normal((10, 6)) * 2,  # Scaled context
        keras.random.normal((10, 6)) + 1,  # Shifted context
    ]
    
    print("Context Behavior Analysis:")
    print("=" * 40)
    
    for i, test_context in enumerate(test_contexts):
        prediction = model([test_inputs, test_context])
        print(f"Context {i+1}: Prediction mean = {keras.ops.mean(prediction):.4f}")
    
    return model

# Analyze context behavior
# model = analyze_context_behavior()
