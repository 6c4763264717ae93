"""Measuring: the codec advisor (`bale codecs`) and loader throughput (`bale bench`)."""
