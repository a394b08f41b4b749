"""The one ``transformers.Trainer`` subclass every stage trains with."""
