"""Datasets: IDC (Kaggle patient/class/png layout), MNIST IDX, image folders, embedded samples, splits."""
from advkeras.data.dataset import Dataset
from advkeras.data.files import ImageFiles
from advkeras.errors import DataError
from advkeras.data.folder import load_image_folder
from advkeras.data.idc import IDC_CLASSES, load_idc
from advkeras.data.mnist import load_mnist_idx, read_idx
from advkeras.data.samples import SAMPLES, load_sample
from advkeras.data.sampling import composition, stratified_indices, stratified_subset
from advkeras.data.split import split_by_group, split_random
from advkeras.data.resolve import load_dataset

__all__ = ["Dataset", "DataError", "ImageFiles", "IDC_CLASSES", "SAMPLES", "load_dataset", "load_idc", "load_image_folder",
           "load_mnist_idx", "load_sample", "read_idx", "split_by_group", "split_random", "composition",
           "stratified_indices", "stratified_subset"]
