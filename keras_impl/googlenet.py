"""GoogLeNet (torchvision layout) and the paper's Inception v1 (Szegedy et al., 2014).

Layer names are the torch module paths (see torch_impl/googlenet.py and docs/inception.md).
Every max-pool uses ceil_mode=True, emulated with -inf padding: the graph needs a static
input size (default 224x224).

googlenet_d2l: seed 003's (d2l) GoogLeNet (torch_impl/googlenet.py): convs with bias, d2l's
branch names (p1_1 ... p4_2), max pools 3x3/2 padded by 1 without ceil_mode, one input channel.

googlenet_nobn: seed 004's GoogLeNet (torch_impl/googlenet.py): inception_v1 without LRN,
maxpool4 3x3/2, aux heads pooling with AvgPool2d(5, stride=3) and dropping out before fc1 too.

inception_v1_lrn64: seed 000's Inception v1 at 128 px (torch_impl/googlenet.py): layers named
block1.0.conv.0 ... as its nn.Sequential paths, branch_1x1 ... branch_pool, LocalResponseNorm(64)
and (192) with torch's even window, the classifier on the (H, W, C) flatten of the 2x2 map (the
catalogue permutes it).

With auxiliary heads the graph outputs (logits, aux_logits2, aux_logits1); the model
returns all three in training mode and the logits only (without running the heads) in
inference, as torch does.
"""
import keras
from keras import layers, ops

from .layers import AdaptiveAvgPool2D, Dropout, Linear, batch_norm, conv2d, global_avg_pool, max_pool, relu

BLOCKS = {  # name: (ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj)
    "inception3a": (64, 96, 128, 16, 32, 32),
    "inception3b": (128, 128, 192, 32, 96, 64),
    "inception4a": (192, 96, 208, 16, 48, 64),
    "inception4b": (160, 112, 224, 24, 64, 64),
    "inception4c": (128, 128, 256, 24, 64, 64),
    "inception4d": (112, 144, 288, 32, 64, 64),
    "inception4e": (256, 160, 320, 32, 128, 128),
    "inception5a": (256, 160, 320, 32, 128, 128),
    "inception5b": (384, 192, 384, 48, 128, 128),
}
LRN = dict(size=5, alpha=1e-4, beta=0.75, k=1.0)  # the paper's Caffe model
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


@keras.saving.register_keras_serializable(package="cnn_parity")
class LocalResponseNorm(layers.Layer):
    """torch.nn.LocalResponseNorm over the channel (last) axis.

    y_c = x_c / (k + alpha / size * sum(x_j^2 for j in c - size//2 .. c + (size-1)//2)) ** beta:
    alpha is divided by size and, for even sizes, the window reaches one channel further
    back than forward. (tf.nn.local_response_normalization has neither.)
    """

    def __init__(self, size, alpha=1e-4, beta=0.75, k=1.0, **kwargs):
        super().__init__(**kwargs)
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def call(self, x):
        channels = x.shape[-1]
        squares = ops.pad(ops.square(x), [[0, 0], [0, 0], [0, 0], [self.size // 2, (self.size - 1) // 2]])
        window_sum = squares[..., 0:channels]
        for offset in range(1, self.size):
            window_sum = window_sum + squares[..., offset:offset + channels]
        # x / base**beta as x * exp(-beta * log(base)): tf2onnx's layout optimizer cannot move
        # its NHWC/NCHW transposes through Pow or Div, and would leave six in inception_v1's ONNX.
        return x * ops.exp(-self.beta * ops.log(self.k + (self.alpha / self.size) * window_sum))

    def get_config(self):
        return {**super().get_config(), "size": self.size, "alpha": self.alpha, "beta": self.beta, "k": self.k}


@keras.saving.register_keras_serializable(package="cnn_parity")
class AuxOutputsModel(keras.Model):
    """A functional model whose graph outputs (logits, *aux_logits).

    Training mode returns every output as a tuple; inference returns the logits only,
    through a logits-only view of the same layers, so the auxiliary heads never run.
    """

    def __init__(self, inputs, outputs, name=None, **kwargs):  # Functional's signature: saving works
        super().__init__(inputs=inputs, outputs=outputs, name=name, **kwargs)
        # not tracked as a sub-model: it shares every layer with this model
        object.__setattr__(self, "_logits_model", keras.Model(self.input, self.outputs[0]))

    @property
    def inference_model(self):
        """The logits-only view: the layers inference runs (the auxiliary heads are not among them)."""
        return self._logits_model

    def call(self, inputs, training=None, mask=None):
        if training:
            return tuple(super().call(inputs, training=True, mask=mask))
        return self._logits_model(inputs, training=False)


def basic_conv2d(x, filters, kernel_size, *, name, stride=1, padding=0):
    """conv (no bias) + BatchNorm (eps 0.001) + ReLU."""
    x = conv2d(x, filters, kernel_size, stride=stride, padding=padding, bias=False, name=f"{name}.conv")
    return relu(batch_norm(x, eps=0.001, name=f"{name}.bn"))


def conv_relu(x, filters, kernel_size, *, name, stride=1, padding=0):
    """conv (with bias) + ReLU: the paper's unit, named like basic_conv2d's conv."""
    return relu(conv2d(x, filters, kernel_size, stride=stride, padding=padding, name=f"{name}.conv"))


def inception(x, spec, *, name, conv_block, branch3_kernel=3):
    ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj = spec
    branch1 = conv_block(x, ch1x1, 1, name=f"{name}.branch1")
    branch2 = conv_block(x, ch3x3red, 1, name=f"{name}.branch2.0")
    branch2 = conv_block(branch2, ch3x3, 3, padding=1, name=f"{name}.branch2.1")
    branch3 = conv_block(x, ch5x5red, 1, name=f"{name}.branch3.0")
    branch3 = conv_block(branch3, ch5x5, branch3_kernel, padding=branch3_kernel // 2, name=f"{name}.branch3.1")
    branch4 = max_pool(x, 3, 1, padding=1, ceil_mode=True, name=f"{name}.branch4.0")
    branch4 = conv_block(branch4, pool_proj, 1, name=f"{name}.branch4.1")
    return layers.Concatenate(axis=-1, name=name)([branch1, branch2, branch3, branch4])


def inception_aux(x, num_classes, *, name, conv_block, dropout=0.7, seed004=False):
    """Auxiliary classifier: 4x4 adaptive average pool, 1x1 conv to 128, fc 2048 -> 1024 -> classes.
    seed 004's (`seed004=True`): AvgPool2d(5, stride=3) instead, and dropout before fc1 too."""
    if seed004:
        x = layers.AveragePooling2D(5, 3, padding="valid", name=f"{name}.pool")(x)
    else:
        x = AdaptiveAvgPool2D((4, 4), name=f"{name}.pool")(x)
    x = conv_block(x, 128, 1, name=f"{name}.conv")
    x = layers.Flatten(name=f"{name}.flatten")(x)  # (H, W, C) order: the catalogue permutes fc1
    if seed004:
        x = Dropout(dropout, name=f"{name}.dropout_fc1")(x)
    x = relu(Linear(1024, name=f"{name}.fc1")(x))
    x = Dropout(dropout, name=f"{name}.dropout")(x)
    return Linear(num_classes, name=f"{name}.fc2")(x)


def global_average(x, *, name):
    """Global average pooling as a full-window average pool: tf2onnx then needs no layout
    transpose (after googlenet's last concat, a ReduceMean over H, W keeps one)."""
    x = layers.AveragePooling2D(tuple(x.shape[1:3]), name=name)(x)
    return layers.Reshape((x.shape[-1],), name=f"{name}.flatten")(x)


def transform_imagenet_input(x):
    """Re-normalise an ImageNet-normalised input to the [-1, 1] range the original weights expect."""
    scale = [s / 0.5 for s in IMAGENET_STD]
    shift = [(m - 0.5) / 0.5 for m in IMAGENET_MEAN]
    return layers.Rescaling(scale, offset=shift, name="transform_input")(x)


def googlenet_graph(name, conv_block, *, branch3_kernel=3, lrn=False, num_classes=1000, aux_logits=False,
                    transform=False, dropout=0.2, dropout_aux=0.7, input_shape=(224, 224, 3), seed004=False):
    inputs = keras.Input(shape=input_shape, name="input")
    x = transform_imagenet_input(inputs) if transform else inputs
    x = max_pool(conv_block(x, 64, 7, stride=2, padding=3, name="conv1"), 3, 2, ceil_mode=True, name="maxpool1")
    x = LocalResponseNorm(**LRN, name="lrn1")(x) if lrn else x
    x = conv_block(conv_block(x, 64, 1, name="conv2"), 192, 3, padding=1, name="conv3")
    x = LocalResponseNorm(**LRN, name="lrn2")(x) if lrn else x
    x = max_pool(x, 3, 2, ceil_mode=True, name="maxpool2")

    block = lambda x, name: inception(x, BLOCKS[name], name=name, conv_block=conv_block,  # noqa: E731
                                      branch3_kernel=branch3_kernel)
    aux = lambda x, name: inception_aux(x, num_classes, name=name, conv_block=conv_block,  # noqa: E731
                                        dropout=dropout_aux, seed004=seed004)
    x = block(block(x, "inception3a"), "inception3b")
    x = block(max_pool(x, 3, 2, ceil_mode=True, name="maxpool3"), "inception4a")
    aux1 = aux(x, "aux1") if aux_logits else None
    x = block(block(block(x, "inception4b"), "inception4c"), "inception4d")
    aux2 = aux(x, "aux2") if aux_logits else None
    x = max_pool(block(x, "inception4e"), 3 if seed004 else 2, 2, ceil_mode=True, name="maxpool4")
    x = block(block(x, "inception5a"), "inception5b")
    x = global_average(x, name="avgpool")
    logits = Linear(num_classes, name="fc")(Dropout(dropout, name="dropout")(x))
    if aux_logits:
        return AuxOutputsModel(inputs, [logits, aux2, aux1], name=name)
    return keras.Model(inputs, logits, name=name)


def googlenet(*, num_classes=1000, aux_logits=False, transform_input=False, dropout=0.2, dropout_aux=0.7,
              input_shape=(224, 224, 3)):
    return googlenet_graph("googlenet", basic_conv2d, num_classes=num_classes, aux_logits=aux_logits,
                           transform=transform_input, dropout=dropout, dropout_aux=dropout_aux,
                           input_shape=input_shape)


def inception_v1(*, num_classes=1000, aux_logits=True, dropout=0.4, dropout_aux=0.7, input_shape=(224, 224, 3)):
    return googlenet_graph("inception_v1", conv_relu, branch3_kernel=5, lrn=True, num_classes=num_classes,
                           aux_logits=aux_logits, dropout=dropout, dropout_aux=dropout_aux,
                           input_shape=input_shape)


def googlenet_nobn(*, num_classes=5, aux_logits=True, dropout=0.4, dropout_aux=0.5, input_shape=(224, 224, 3)):
    return googlenet_graph("googlenet_nobn", conv_relu, branch3_kernel=5, num_classes=num_classes,
                           aux_logits=aux_logits, dropout=dropout, dropout_aux=dropout_aux, input_shape=input_shape,
                           seed004=True)


def d2l_inception(x, spec, *, name):
    """d2l's Inception: four branches of convs with bias + ReLU, named as d2l names them."""
    ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj = spec
    p1 = relu(conv2d(x, ch1x1, 1, name=f"{name}.p1_1"))
    p2 = relu(conv2d(relu(conv2d(x, ch3x3red, 1, name=f"{name}.p2_1")), ch3x3, 3, padding=1, name=f"{name}.p2_2"))
    p3 = relu(conv2d(relu(conv2d(x, ch5x5red, 1, name=f"{name}.p3_1")), ch5x5, 5, padding=2, name=f"{name}.p3_2"))
    p4 = relu(conv2d(max_pool(x, 3, 1, padding=1, name=f"{name}.p4_1"), pool_proj, 1, name=f"{name}.p4_2"))
    return layers.Concatenate(axis=-1, name=name)([p1, p2, p3, p4])


def googlenet_d2l(*, in_channels=None, num_classes=10, input_shape=None):
    inputs = keras.Input(shape=input_shape or (None, None, in_channels or 1), name="input")
    x = max_pool(relu(conv2d(inputs, 64, 7, stride=2, padding=3, name="conv1")), 3, 2, padding=1, name="pool1")
    x = relu(conv2d(relu(conv2d(x, 64, 1, name="conv2")), 192, 3, padding=1, name="conv3"))
    x = max_pool(x, 3, 2, padding=1, name="pool2")
    x = d2l_inception(d2l_inception(x, BLOCKS["inception3a"], name="inception3a"), BLOCKS["inception3b"],
                      name="inception3b")
    x = max_pool(x, 3, 2, padding=1, name="pool3")
    for block in ("inception4a", "inception4b", "inception4c", "inception4d", "inception4e"):
        x = d2l_inception(x, BLOCKS[block], name=block)
    x = max_pool(x, 3, 2, padding=1, name="pool4")
    x = d2l_inception(d2l_inception(x, BLOCKS["inception5a"], name="inception5a"), BLOCKS["inception5b"],
                      name="inception5b")
    x = Linear(num_classes, name="fc")(global_avg_pool(x, name="avgpool"))
    return keras.Model(inputs, x, name="googlenet_d2l")


def seed000_conv(x, filters, kernel_size, *, name, stride=1, padding=0):
    """seed 000's BasicConv2d: conv (with bias) + ReLU, the conv at `{name}.conv.0` (its Sequential)."""
    return relu(conv2d(x, filters, kernel_size, stride=stride, padding=padding, name=f"{name}.conv.0"))


def seed000_inception(x, spec, *, name):
    """seed 000's Inception: branch_1x1, branch_3x3, branch_5x5 (5x5) and branch_pool."""
    ch1x1, ch3x3red, ch3x3, ch5x5red, ch5x5, pool_proj = spec
    b1 = seed000_conv(x, ch1x1, 1, name=f"{name}.branch_1x1")
    b2 = seed000_conv(seed000_conv(x, ch3x3red, 1, name=f"{name}.branch_3x3.0"), ch3x3, 3, padding=1,
                      name=f"{name}.branch_3x3.1")
    b3 = seed000_conv(seed000_conv(x, ch5x5red, 1, name=f"{name}.branch_5x5.0"), ch5x5, 5, padding=2,
                      name=f"{name}.branch_5x5.1")
    b4 = seed000_conv(max_pool(x, 3, 1, padding=1, name=f"{name}.branch_pool.0"), pool_proj, 1,
                      name=f"{name}.branch_pool.1")
    return layers.Concatenate(axis=-1, name=name)([b1, b2, b3, b4])


def inception_v1_lrn64(*, num_classes=1000, input_shape=(128, 128, 3)):
    pool = lambda x, name: max_pool(x, 3, 2, padding=1, name=name)  # noqa: E731
    block = lambda x, spec, name: seed000_inception(x, BLOCKS[spec], name=name)  # noqa: E731
    inputs = keras.Input(shape=input_shape, name="input")
    x = pool(seed000_conv(inputs, 64, 7, stride=2, padding=3, name="block1.0"), "block1.1")
    x = seed000_conv(LocalResponseNorm(64, name="block1.2")(x), 64, 1, name="block1.3")
    x = LocalResponseNorm(192, name="block1.5")(seed000_conv(x, 192, 3, padding=1, name="block1.4"))
    x = block(block(pool(x, "block1.6"), "inception3a", "block2.0"), "inception3b", "block2.1")
    x = block(pool(x, "block2.2"), "inception4a", "block2.3")
    for i, spec in enumerate(("inception4b", "inception4c", "inception4d")):
        x = block(x, spec, f"block3.{i}")
    x = pool(x, "block4.0")
    for i, spec in enumerate(("inception4e", "inception5a", "inception5b"), start=1):
        x = block(x, spec, f"block4.{i}")
    x = layers.Flatten(name="flatten")(layers.AveragePooling2D(3, 1, name="block4.4")(x))
    return keras.Model(inputs, Linear(num_classes, name="classifier")(x), name="inception_v1_lrn64")
