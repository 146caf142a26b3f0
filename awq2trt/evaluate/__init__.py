"""Quality measurements on the reference model: perplexity and greedy generation."""
