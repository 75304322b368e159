"""Inception v3 (torchvision layout) and its keras.applications twin; see docs/inception.md."""
from .registry import register_model

# 75x75 is the smallest input whose Mixed_7a reductions leave a 1x1 map; in training, the
# AuxLogits head's 5x5 conv needs Mixed_6e's 17x17 map: 299x299 (298 fails).
register_model("inception_v3", family="inception", module="inception", input_size=(3, 299, 299),
                   test_sizes=(80, 75), min_size=75, train_min_size=299, published_params=27_161_264,
                   head=("fc", "AuxLogits.fc"), aux_weights=(0.4,))
# keras.applications.InceptionV3 exactly (no aux head, pools exclude padding). Its own summary
# says 23,851,784 because it counts the BN moving statistics but has no BN scale (gamma).
register_model("inception_v3_keras", family="inception", module="inception", input_size=(3, 299, 299),
                   test_sizes=(80, 75), min_size=75, published_params=23_834_568,
                   head=("fc",))
