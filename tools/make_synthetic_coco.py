"""Generate the deterministic synthetic COCO shapes dataset.

Example:
    python tools/make_synthetic_coco.py --out data/synthetic_coco --num-train 2000
"""
import argparse

from fqn_det.datasets import generate_synthetic_coco


def parse_args(argv=None) -> argparse.Namespace:
    """Parse command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--out', default='data/synthetic_coco', help='output folder')
    p.add_argument('--num-train', type=int, default=3000, help='training images')
    p.add_argument('--num-val', type=int, default=200, help='validation images')
    p.add_argument('--img-size', type=int, default=128, help='square image side in px')
    p.add_argument('--seed', type=int, default=0, help='random seed')
    p.add_argument('--max-objects', type=int, default=6, help='max objects per image')
    p.add_argument('--overwrite', action='store_true',
                   help='replace an existing dataset made with other settings')
    p.add_argument('--quiet', action='store_true', help='no progress bar')
    return p.parse_args(argv)


def main(argv=None) -> None:
    """Run the generator and print a summary."""
    a = parse_args(argv)
    r = generate_synthetic_coco(a.out, num_train=a.num_train, num_val=a.num_val,
                                img_size=a.img_size, seed=a.seed,
                                max_objects=a.max_objects, progress=not a.quiet,
                                overwrite=a.overwrite)
    print(f"dataset at {r['out_dir']}: {r['num_train']} train images "
          f"({r['num_train_annotations']} boxes), {r['num_val']} val images "
          f"({r['num_val_annotations']} boxes), {r['img_size']}px, "
          f"classes {r['classes']}")
    print(f"  train ann: {r['train_ann_file']}\n  val ann:   {r['val_ann_file']}")


if __name__ == '__main__':
    main()
