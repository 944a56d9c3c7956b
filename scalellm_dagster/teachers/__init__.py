"""Teachers: who labels the sample. An LLM over any OpenAI-compatible endpoint, or a named simulation of one."""
