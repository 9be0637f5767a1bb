#!/usr/bin/env cwl-runner
# A scatter: shout.cwl once per word (one Toil job, so one Shoal job, each), then gather.cwl joins them.
cwlVersion: v1.2
class: Workflow
requirements:
  ScatterFeatureRequirement: {}
hints:
  ResourceRequirement: {coresMin: 1, ramMin: 256, tmpdirMin: 64, outdirMin: 64}
inputs:
  words: string[]
outputs:
  shouted:
    type: File
    outputSource: gather/all
steps:
  shout:
    run: shout.cwl
    scatter: word
    in: {word: words}
    out: [shouted]
  gather:
    run: gather.cwl
    in: {files: shout/shouted}
    out: [all]
