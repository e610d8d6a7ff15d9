"""``bal data prepare``: the paper's data sets in the authors' layout, from their official archives."""

from __future__ import annotations

from bal.cli.flags import add, fraction, seed


def add_data_commands(sub) -> dict:
    from bal.data.prepare import PREPARERS

    p = sub.add_parser("data", help="prepare CIFAR-10/100, SVHN, Caltech-101 or Tiny ImageNet in the authors' layout",
                       description="Write DATAPATH/NAME/{train,test}/CLASS/* (what --datapath DATAPATH --dataset NAME "
                                   "reads) from the official archive you have; resumable. Pixel arrays (CIFAR, SVHN) "
                                   "become PNG files (lossless); image files (Caltech-101, Tiny ImageNet) are copied "
                                   "as they are.")
    actions = p.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    q = actions.add_parser("prepare", help="write a data set in the authors' layout",
                           description="Official files: " + "; ".join(f"{n}: {f}" for n, (f, _, _) in
                                                                       PREPARERS.items()))
    q.add_argument("name", choices=list(PREPARERS), help="the data set")
    add(q, "--out", required=True, metavar="DATAPATH", help="the folder that is to hold NAME/{train,test}")
    add(q, "--from", dest="source", default=None, metavar="FILE", help="the official archive (see above)")
    add(q, "--download", action="store_true",
        help="fetch the official archive with torchvision's downloader into DATAPATH/.downloads first "
             "(needs the network; Tiny ImageNet has none)")
    add(q, "--format", dest="image_format", choices=["png", "jpg"], default="png",
        help="how pixel arrays are written: png (lossless) or jpg (quality 95) (default: %(default)s)")
    add(q, "--seed", type=seed, default=0, help="Caltech-101's train/test split (default: %(default)s)")
    add(q, "--test_fraction", type=fraction(zero=False), default=0.2,
        help="Caltech-101: the share of each class that is test (default: %(default)s)")
    add(q, "--no_progress", action="store_true", help="no progress bar")
    return {"data": cmd_data}


def cmd_data(args) -> int:
    from bal.data.prepare import prepare_dataset

    r = prepare_dataset(args.name, args.out, args.source, download=args.download, image_format=args.image_format,
                        seed=args.seed, test_fraction=args.test_fraction, progress=not args.no_progress)
    counts = ", ".join(f"{split} {n:,}" for split, n in sorted(r.counts.items(), reverse=True))
    if r.already:
        print(f"{r.folder} is prepared already ({counts}, {r.classes} classes)")
    else:
        kept = f" ({r.kept:,} were there from an interrupted call)" if r.kept else ""
        print(f"prepared {r.folder}: {counts} images, {r.classes} classes; wrote {r.written:,}{kept}")
    print(f"next: bal rotation --datapath {args.out} --dataset {args.name} --save checkpoint/{args.name}")
    return 0
