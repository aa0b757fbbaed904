"""Fashion-MNIST data and a camera simulator that feeds Hone like production cameras."""
