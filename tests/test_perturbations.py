"""FGSM on the real digits classifier."""

import pytest
import torch

from armory_datasets.demo import digits as D
from armory_datasets.perturbations import FGSM, Perturbation

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def classifier():
    return D.train_classifier(seed=0)


@pytest.fixture(scope="session")
def test_data():
    split = D.train_test_split_digits(seed=0)
    return torch.from_numpy(split.test_images), torch.from_numpy(split.test_labels)


def accuracy(model, images_unit, labels):
    with torch.no_grad():
        return (model(D.normalize_digits(images_unit)).argmax(1) == labels).float().mean().item()


def test_fgsm_lowers_accuracy_and_stays_in_unit_range(classifier, test_data):
    images, labels = test_data
    attack = FGSM(classifier, epsilon=0.1)
    adversarial = attack.perturb(images, labels, D.normalize_digits)
    assert adversarial.shape == images.shape and adversarial.dtype == torch.float32
    assert adversarial.min() >= 0.0 and adversarial.max() <= 1.0
    assert (adversarial - images).abs().max() <= 0.1 + 1e-6
    clean, attacked = accuracy(classifier, images, labels), accuracy(classifier, adversarial, labels)
    assert clean > 0.95 and attacked < clean - 0.2, (clean, attacked)


def test_fgsm_zero_epsilon_is_identity_and_bad_epsilon_rejected(classifier, test_data):
    images, labels = test_data
    torch.testing.assert_close(FGSM(classifier, 0.0).perturb(images[:8], labels[:8], D.normalize_digits), images[:8])
    with pytest.raises(ValueError):
        FGSM(classifier, -0.1)


def test_fgsm_targeted_moves_towards_target(classifier, test_data):
    images, labels = test_data
    wanted = (labels + 1) % 10
    adversarial = FGSM(classifier, 0.1, targeted=True).perturb(images, wanted, D.normalize_digits)
    before = accuracy(classifier, images, wanted)
    after = accuracy(classifier, adversarial, wanted)
    assert after > before + 0.05, (before, after)


def test_fgsm_under_no_grad_leaves_model_untouched(classifier, test_data):
    images, labels = test_data
    attack = FGSM(classifier, 0.05, name="fgsm5")
    with torch.no_grad():
        a = attack.perturb(images[:16], labels[:16].numpy(), D.normalize_digits)
    b = attack.perturb(images[:16], labels[:16], D.normalize_digits)
    assert torch.equal(a, b) and not a.requires_grad
    assert not classifier.training and all(p.grad is None for p in classifier.parameters())
    assert isinstance(attack, Perturbation)
    assert attack.name == "fgsm5" and attack.params() == {"epsilon": 0.05, "targeted": False}
