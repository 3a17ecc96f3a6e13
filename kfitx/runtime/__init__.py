"""What this process trains on: the Keras backend and the distribution, resolved once per fit."""
