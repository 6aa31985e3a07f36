"""The input normalisations of the networks: mean and std of RGB scaled to [0, 1]."""

IMAGENET_NORMALIZATION = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}
"""torchvision's ImageNet statistics; the plain U-Net, ResNet and MobileNetV2 use them."""
TF_LITE_NORMALIZATION = {"mean": [127 / 255] * 3, "std": [128 / 255] * 3}
"""``(x - 127) / 128`` of 0..255 pixels, as TensorFlow's EfficientNet-Lite was trained."""
