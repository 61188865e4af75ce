"""`keras-attention list`: attention variants and tasks, one line each."""


def add_parser(sub):
    parser = sub.add_parser(
        "list",
        help="list the registered attention variants and tasks",
        description="List the registered attention variants and tasks, one line each.",
    )
    parser.set_defaults(handler=run)
    return parser


def _summary(obj):
    doc = (obj.__doc__ or "").strip().splitlines()
    return doc[0].rstrip(".") if doc else ""


def run(args):
    from keras_attention.layers.attention import registry
    from keras_attention.tasks import available_tasks
    from keras_attention.tasks import get_task

    print("attention variants (--attention NAME):")
    for name in registry.available():
        cls = registry.get_class(name)
        print(f"  {name:<20} {cls.__name__}: {_summary(cls)}")
    print("tasks (--task NAME):")
    for name in available_tasks():
        task = get_task(name)
        print(f"  {name:<20} {task.description} (default dataset: {task.default_dataset})")
    return 0
