"""The 4-task linear classifier, its sparse input path, and macro F1 from confusion matrices."""
