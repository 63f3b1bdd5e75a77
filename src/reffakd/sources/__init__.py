"""Soft-target sources: teacher networks, trained students, and class-level tables (AESL, Tf-KD, uniform)."""

from .base import (
    ClassTable,
    SoftTargetSource,
    TeacherNetwork,
    soft_label_table,
    uniform_table,
    virtual_teacher_table,
)
from .teacher import TeacherInfo, load_teacher, teacher_from_module

__all__ = [
    "ClassTable",
    "SoftTargetSource",
    "TeacherInfo",
    "TeacherNetwork",
    "load_teacher",
    "teacher_from_module",
    "soft_label_table",
    "uniform_table",
    "virtual_teacher_table",
]
