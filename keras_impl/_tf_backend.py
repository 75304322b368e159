"""Keras' TensorFlow backend and grouped convolutions called eagerly.

On its TensorFlow backend Keras runs a grouped convolution through a jit_compile
tf.function that it defines inside its `conv` op, anew on every call (a CPU workaround).
Called eagerly, every grouped layer therefore traces and compiles again on every call,
and TensorFlow warns "triggered tf.function retracing" (ResNeXt: 16 such layers per
forward pass). GroupedConv2D keeps one tf.function per layer for its eager calls, traced
once per input shape. Inside a traced function (ONNX export, benchmarks under
tf.function) it calls Keras' op directly, so those graphs are exactly Keras' own.
Used for groups > 1 on the tensorflow backend only (keras_impl/layers.py).
"""
import keras
import tensorflow as tf
from keras import layers


@keras.saving.register_keras_serializable(package="cnn_parity")
class GroupedConv2D(layers.Conv2D):
    def convolution_op(self, inputs, kernel):
        if not tf.executing_eagerly():
            return super().convolution_op(inputs, kernel)
        compiled = self.__dict__.get("_eager_convolution")
        if compiled is None:
            compiled = tf.function(super().convolution_op)
            # All layers share one Python method, so TF counts their first traces as one
            # function retracing; each layer traces once per shape, which is what we want.
            compiled._omit_frequent_tracing_warning = True
            object.__setattr__(self, "_eager_convolution", compiled)  # outside Keras' attribute tracking
        return compiled(inputs, kernel)
