"""Constants the data layer and the settings share, in a leaf module that imports nothing of the
package (config.py names them too)."""

# Limits of the work one request or image may demand (serving, training and evaluation alike).
# Far above any person crop: an image whose header claims more pixels is refused undecoded.
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_IMAGES_PER_REQUEST = 256
# Market-1501's protocol: pid -1 is junk (ignored in evaluation), 0000 a distractor (a negative).
JUNK_PID = -1
DISTRACTOR_PID = 0
# ImageNet's RGB mean and standard deviation on the [0, 1] scale (torchvision, torchreid, boxmot), and
# Keras' caffe-mode mean of BGR pixels on the [0, 255] scale.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CAFFE_MEAN_BGR = (103.939, 116.779, 123.68)
ONNX_OPSET = 17  # TensorRT 8.6+, ONNX Runtime 1.14+; boxmot pins onnxruntime 1.24 (opsets up to 23)
