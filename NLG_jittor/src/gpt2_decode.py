"""gpt2_decode.py: beam-search token ids -> reference and prediction text files (microsoft/LoRA's flags).

The same file in NLG_pytorch/src and NLG_jittor/src; the work is in common_data/cli/decode.py:
    python NLG_pytorch/src/gpt2_decode.py --vocab ../shared/vocab --sample_file runs/e2e/predict.jsonl \\
        --input_file common_data/e2e/formatted/test_formatted.jsonl \\
        --output_ref_file e2e_ref.txt --output_pred_file e2e_pred.txt
"""
import sys

from common_data.cli.decode import main

if __name__ == "__main__":
    sys.exit(main())
