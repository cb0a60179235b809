"""The edge commands (`masknet run`, `bench`, `doctor`): the top floor. Each module has
``add_arguments(parser)`` and ``run(args) -> int``; no command imports another."""
