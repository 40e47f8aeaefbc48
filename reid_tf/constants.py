"""Constants the data layer and the settings share, in a leaf module that imports nothing of the
package (config.py names them too)."""

# Limits of the work one request or image may demand (serving, training and evaluation alike).
# Far above any person crop: an image whose header claims more pixels is refused undecoded.
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_IMAGES_PER_REQUEST = 256
# Market-1501's protocol: pid -1 is junk (ignored in evaluation), 0000 a distractor (a negative).
JUNK_PID = -1
DISTRACTOR_PID = 0
