
containerdv2.2.1 ˆ'(Ğ2v0.12.2