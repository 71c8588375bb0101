"""Training and evaluation of classifiers on in-memory tensors, seeded and with progress bars."""

import torch
from torch import nn
from tqdm import tqdm

from prunelimit.curvature import NonFiniteLossError
from prunelimit.models import prunable_parameters


def train_classifier(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    batch_size: int = 128,
    momentum: float = 0.9,
    l1: float = 0.0,
    seed: int = 0,
    progress: bool = True,
) -> list[float]:
    """SGD with momentum on cross-entropy (+ ``l1`` times the l1 norm of the prunable weights).

    images [N, ...], labels [N]. Batches are reshuffled each epoch from ``seed``. Returns the mean
    training loss (without the penalty) of each epoch.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    loss_fn, weights = nn.CrossEntropyLoss(), prunable_parameters(model)
    history = []
    model.train()
    for _ in tqdm(range(epochs), desc="epochs", disable=not progress):
        order = torch.randperm(len(images), generator=generator)
        total = 0.0
        for start in range(0, len(images), batch_size):
            batch = order[start : start + batch_size]
            loss = loss_fn(model(images[batch]), labels[batch])
            if not torch.isfinite(loss):
                raise NonFiniteLossError(f"training loss is {loss.item()}: lower the learning rate")
            penalty = l1 * sum(w.abs().sum() for w in weights) if l1 else 0.0
            optimizer.zero_grad()
            (loss + penalty).backward()
            optimizer.step()
            total += loss.item() * len(batch)
        history.append(total / len(images))
    model.eval()
    return history


@torch.no_grad()
def evaluate(
    model: nn.Module, images: torch.Tensor, labels: torch.Tensor, chunk_size: int = 4096
) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) over the data, in chunks, in eval mode."""
    model.eval()
    loss, correct = 0.0, 0
    for start in range(0, len(images), chunk_size):
        logits = model(images[start : start + chunk_size])
        targets = labels[start : start + chunk_size]
        loss += nn.functional.cross_entropy(logits, targets, reduction="sum").item()
        correct += int((logits.argmax(dim=1) == targets).sum())
    return loss / len(images), correct / len(images)
