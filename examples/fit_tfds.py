"""`model.fit` on a tensorflow-datasets pipeline with a library builder.

Loads the embedded ListOps dataset through tfds (generated locally, nothing
downloaded), builds `keras_attention.models.text_classifier` with the
attention variant of your choice, trains it with XLA and evaluates it.

    python examples/fit_tfds.py --attention regional --data-dir /tmp/tfds
"""

import argparse

import keras

import keras_attention as ka
from keras_attention.data import listops_config
from keras_attention.data import load_listops


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--attention", default="multi_head", choices=ka.layers.available())
    parser.add_argument("--data-dir", default=None, help="tfds data_dir")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--train-size", type=int, default=2000)
    args = parser.parse_args(argv)
    keras.utils.set_random_seed(0)
    # A smaller ListOps than the default: lengths 16-64.
    config = listops_config("small", min_length=16, max_length=64, train_size=args.train_size,
                            validation_size=256, test_size=256)
    train = load_listops("train", data_dir=args.data_dir, config=config, batch_size=32)
    test = load_listops("test", data_dir=args.data_dir, config=config, batch_size=64)
    model = ka.models.text_classifier(
        vocabulary_size=len(ka.data.listops_vocabulary()),
        num_classes=10,
        sequence_length=64,
        hidden_dim=32,
        num_layers=1,
        num_heads=2,
        attention=args.attention,
    )
    ka.models.compile_classifier(model, learning_rate=2e-3)  # AdamW, jit_compile=True
    model.fit(train, epochs=args.epochs, verbose=2)
    results = model.evaluate(test, return_dict=True, verbose=0)
    print(f"{args.attention}: test accuracy {results['accuracy']:.3f}")
    return results


if __name__ == "__main__":
    main()
