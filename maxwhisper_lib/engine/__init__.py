"""The engine: MAX graphs, Mojo kernels, the model that runs them, the compiled-model store."""
