"""Soft-target sources: teacher networks, trained students, and class-level tables (AESL, Tf-KD, uniform)."""

from .base import (
    ClassTable,
    InstanceTable,
    SoftTargetSource,
    TeacherNetwork,
    instance_soft_label_source,
    soft_label_table,
    uniform_table,
    virtual_teacher_table,
)
from .online import LearningSource, OnlineClassTable, PartnerPredictions, PreviousPredictions, ols_table
from .structured import network_class_table, structured_soft_label_table, structured_teacher_table
from .teacher import TeacherInfo, load_teacher, teacher_from_module

__all__ = [
    "ClassTable",
    "InstanceTable",
    "LearningSource",
    "OnlineClassTable",
    "PartnerPredictions",
    "PreviousPredictions",
    "instance_soft_label_source",
    "network_class_table",
    "structured_soft_label_table",
    "structured_teacher_table",
    "ols_table",
    "SoftTargetSource",
    "TeacherInfo",
    "TeacherNetwork",
    "load_teacher",
    "teacher_from_module",
    "soft_label_table",
    "uniform_table",
    "virtual_teacher_table",
]
