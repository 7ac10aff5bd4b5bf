"""The Label Studio loop: tasks with the model's pre-labels in, completed labels out into data/raw."""
