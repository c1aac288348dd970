#!/bin/bash
# SiMPO fine-tuning in the DRAKES setting on SLURM GPU nodes (docs/gpu.md).
# One task per GPU: Lightning's SLURM detection reads SLURM_PROCID / SLURM_LOCALID / SLURM_NTASKS and joins the
# tasks into one DDP job; --ntasks-per-node must equal the GPUs per node. Submit from the repository root:
#   sbatch examples/slurm_drakes.sh
# after setting the DRAKES paths in configs/dna/drakes/finetune.yaml. Resubmitting the same script resumes from
# runs/drakes_simpo/checkpoints/last.ckpt, also with another number of nodes or GPUs.
#SBATCH --job-name=simpo-drakes
#SBATCH --nodes=1
#SBATCH --gpus-per-node=4
#SBATCH --ntasks-per-node=4
#SBATCH --cpus-per-task=8
#SBATCH --time=24:00:00
#SBATCH --output=runs/drakes_simpo/slurm-%j.out
set -euo pipefail
mkdir -p runs/drakes_simpo
source .venv/bin/activate        # an environment with: pip install -e '.[drakes]'
export OMP_NUM_THREADS=${SLURM_CPUS_PER_TASK:-8}
srun simpo-bio fit --config configs/dna/drakes/finetune.yaml --trainer.num_nodes="${SLURM_NNODES}"
