"""What train, export, eval and bench share: the datasets under ../shared/data, the machine a figure came from."""
