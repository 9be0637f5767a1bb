#!/usr/bin/env cwl-runner
# One word, shouted: its upper case in WORD.txt. The scatter in scatter.cwl runs one of these per word.
cwlVersion: v1.2
class: CommandLineTool
baseCommand: [sh, -c, 'printf "%s\n" "$0" | tr a-z A-Z']
inputs:
  word:
    type: string
    inputBinding: {position: 1}
stdout: $(inputs.word).txt
outputs:
  shouted: stdout
