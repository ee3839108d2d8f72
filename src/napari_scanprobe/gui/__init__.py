"""The napari skin: reader, sample data and widgets. The only package that imports napari/Qt."""
