"""`image_size` as the image pipelines take it (the shared checks are in
`keras_attention.arguments`)."""


def image_size_argument(where, image_size):
    """`image_size` as `(height, width)`; an int means a square."""
    if isinstance(image_size, int) and not isinstance(image_size, bool):
        image_size = (image_size, image_size)
    if (
        not isinstance(image_size, (tuple, list))
        or len(image_size) != 2
        or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in image_size)
    ):
        raise ValueError(
            f"{where}: `image_size` must be a positive int or (height, width). "
            f"Received: image_size={image_size!r}"
        )
    return tuple(image_size)
