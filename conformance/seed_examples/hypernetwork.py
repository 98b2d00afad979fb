# A context-conditioned network built with HyperZZWOperator: this project's working version of the idea in
# the "Hypernetworks in TensorFlow using Python" blog post, whose own snippet does not run (it passes a
# (1, 10) prediction to `target_net.set_weights`, which expects the network's four weight arrays).
import keras
import numpy as np
from hyperzzw import HyperZZWOperator

keras.utils.set_random_seed(0)

# Data: the same 8 features map to a different target in each of 3 tasks (a task-specific linear rule).
rng = np.random.default_rng(0)
n, n_features, n_tasks = 256, 8, 3
x = rng.normal(size=(n, n_features)).astype("float32")
task = rng.integers(0, n_tasks, size=n)
context = np.eye(n_tasks, dtype="float32")[task]  # one-hot task id
task_weights = rng.normal(size=(n_tasks, n_features)).astype("float32")
y = np.sum(x * task_weights[task], axis=1, keepdims=True)

# Hypernetwork: a small MLP turns the task id into an embedding, and HyperZZWOperator turns the embedding
# into one weight per hidden feature of the main network: hidden * (embedding @ hyper_kernel).
features_in = keras.Input(shape=(n_features,), name="features")
context_in = keras.Input(shape=(n_tasks,), name="context")
embedding = keras.layers.Dense(16, activation="relu")(context_in)
embedding = keras.layers.Dense(8)(embedding)
hidden = keras.layers.Dense(32)(features_in)
hidden = HyperZZWOperator(input_dim=32)([hidden, embedding])  # context_dim (8) is inferred
output = keras.layers.Dense(1)(hidden)
model = keras.Model([features_in, context_in], output)

model.compile(optimizer=keras.optimizers.Adam(learning_rate=0.01), loss="mse")
history = model.fit([x, context], y, epochs=15, batch_size=32, verbose=0)
print(f"target variance: {np.var(y):.3f}")
print(f"MSE: epoch 1 {history.history['loss'][0]:.3f}, epoch 15 {history.history['loss'][-1]:.4f}")
