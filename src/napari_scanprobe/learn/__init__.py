"""Learning on SPM images: the CNN classifier, its model files, prediction and class activation maps.

Every module here imports torch lazily (inside functions) or only when imported itself; the
package's top level stays importable without torch.
"""
