"""Detection quality benchmark on the labelled SMD machines (see ``__main__``)."""
