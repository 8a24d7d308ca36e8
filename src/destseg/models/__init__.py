"""Networks: the ResNet encoder at a chosen output stride, the classifier and the segmenter."""
