#!/usr/bin/env cwl-runner
# The scattered results, in order, in one file.
cwlVersion: v1.2
class: CommandLineTool
baseCommand: cat
inputs:
  files:
    type: File[]
    inputBinding: {position: 1}
stdout: shouted.txt
outputs:
  all: stdout
