//! Autoscalers: HPA-compatible replica calculation, EAS strategies and scheduled scaling.
