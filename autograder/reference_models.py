"""The reference Keras models: the lecture's baseline without BN, the same with BN, and the modern CNN.

The training check trains ``model_without_bn`` as its baseline; the caps of models/cost.py and
models/vet.py are measured on these models.

Keras is imported lazily: NumPy-only checks should not pay for TensorFlow.
"""


def _keras():
    from autograder.keras_runtime import keras  # noqa: PLC0415  (deliberately lazy)
    return keras()


def model_without_bn(input_shape=(28, 28, 1), num_classes=10):
    """The lecture's baseline: Conv(relu) 32 -> pool -> Conv(relu) 64 -> pool -> Dense softmax."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = layers.Conv2D(32, 3, activation="relu")(inputs)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Conv2D(64, 3, activation="relu")(x)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="without_bn")


def _conv_bn_relu(layers, x, filters, padding="valid"):
    x = layers.Conv2D(filters, 3, padding=padding)(x)
    x = layers.BatchNormalization()(x)
    return layers.Activation("relu")(x)


def model_with_bn(input_shape=(28, 28, 1), num_classes=10):
    """The baseline with every Conv followed by BN, then ReLU."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = _conv_bn_relu(layers, inputs, 32)
    x = layers.MaxPooling2D(2)(x)
    x = _conv_bn_relu(layers, x, 64)
    x = layers.MaxPooling2D(2)(x)
    x = layers.Flatten()(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="with_bn")


def modern_cnn(input_shape=(32, 32, 3), num_classes=10):
    """[Conv32-BN-ReLU]x2 - pool - drop .2, [Conv64-BN-ReLU]x2 - pool - drop .3, Conv128-BN-ReLU - GAP - drop .5
    - softmax."""
    keras = _keras()
    layers = keras.layers
    inputs = keras.Input(shape=input_shape)
    x = inputs
    for filters, rate in ((32, 0.2), (64, 0.3)):
        x = _conv_bn_relu(layers, x, filters, "same")
        x = _conv_bn_relu(layers, x, filters, "same")
        x = layers.MaxPooling2D(2)(x)
        x = layers.Dropout(rate)(x)
    x = _conv_bn_relu(layers, x, 128, "same")
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dropout(0.5)(x)
    outputs = layers.Dense(num_classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="modern_cnn")
