"""Registers the example with cnn-parity: `parity --models-from twohead_models check twohead`
(run in this folder), or `import twohead_models` before parity.check("twohead"). The builders
are named as "module:function", so registering imports no framework."""
import parity

parity.register_model(
    "twohead",
    torch="twohead_torch:twohead", keras="twohead_keras:twohead", tf="twohead_tf:twohead",
    input_size=(3, 32, 32),
    test_sizes=(32, 33),
    outputs=("classes", "attributes"),
    head=("classes", "attributes"),
)
